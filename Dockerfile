# smq: one image for workers, the scheduler, the leader, Flower and one-off commands (smq db upgrade,
# smq dead ...). docker-compose.yml builds it as smq:local.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, from pyproject.toml at the versions of constraints.txt: this layer is rebuilt only
# when those two files change, not on every edit of the source.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && useradd --create-home --uid 1000 smq

# Then smq itself, without touching the dependencies.
COPY README.md celeryconfig.py ./
COPY smq ./smq
COPY examples ./examples
RUN pip install --no-deps .
USER smq

# Overridden per service in docker-compose.yml.
CMD ["celery", "-A", "smq", "worker", "-Q", "critical,default,low", "-E", "--loglevel=INFO"]
