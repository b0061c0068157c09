"""``GET /api/health``: anonymous liveness for load balancers and deploy checks."""

import json

import azure.functions as func

from triggers.blueprint import bp


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"status": "ok"}), status_code=200, mimetype="application/json"
    )
