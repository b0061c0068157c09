"""The Functions app: one DFApp, one blueprint each for triggers, orchestrators and activities."""

import azure.durable_functions as df
import azure.functions as func

from activities import bp as activities_bp
from orchestrators import bp as orchestrators_bp
from triggers import bp as triggers_bp

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(triggers_bp)
app.register_functions(orchestrators_bp)
app.register_functions(activities_bp)
