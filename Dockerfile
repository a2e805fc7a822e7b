# One image for web, worker and beat.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN pip install --require-hashes -r requirements/base.txt
COPY --chown=app:app . .
RUN DJANGO_SETTINGS_MODULE=config.settings.dev LP_VAR_DIR=/tmp/build python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown app:app /app/var
USER app
ENV DJANGO_SETTINGS_MODULE=config.settings.production LP_VAR_DIR=/app/var
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
