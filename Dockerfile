# smq: one image for workers, the leader, Flower and one-off commands (smq db upgrade, smq dead ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY smq ./smq
COPY examples ./examples
RUN pip install '.[flower]' \
    && useradd --create-home --uid 1000 smq
USER smq

# Overridden per service in docker-compose.yml.
CMD ["celery", "-A", "smq", "worker", "-Q", "critical,default,low", "--loglevel=INFO"]
