"""`celery -A smq ...` looks for `smq.celery.app`: the application, with its task registered."""

from smq.distributed.app import app
from smq.tasks import execute_state_machine

__all__ = ["app", "execute_state_machine"]
