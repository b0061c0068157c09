"""``RiskEntity@<account>``: every risk decision for an account, one at a time.

The entity is a reducer: it hands the operation to ``domain.risk.apply_operation``, which
works on a copy and answers errors as values, so a bad request changes nothing.
"""

from __future__ import annotations

import azure.durable_functions as df

from domain.risk import apply_operation
from orchestrators.blueprint import bp
from orchestrators.steps import RISK_ENTITY


@bp.function_name(RISK_ENTITY)
@bp.entity_trigger(context_name="context")
def risk_entity(context: df.DurableEntityContext) -> None:
    state, result = apply_operation(
        context.get_state(lambda: None),
        context.operation_name or "",
        context.get_input(),
        account=context.entity_key,
    )
    context.set_state(state)
    context.set_result(result)
