"""For Flower: `celery -A common.flower_app flower`. Reads CONVERGE_BROKER_URL like every other process."""

from common.celery_app import make_app
from common.settings import Settings

app = make_app(Settings().broker_url)
