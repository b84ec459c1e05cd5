# syntax=docker/dockerfile:1
# mediaproxy: slim image, non-root, health-checked.
# docker build -t mediaproxy . && docker run -p 8000:8000 -e MEDIAPROXY_SECRET_KEY=... -e MEDIAPROXY_STORAGE=s3 mediaproxy

# The full Python image has gcc and the C headers for the Cython extension, so the
# build stage needs no apt-get. Every wheel (ours and all dependencies) is built here once.
FROM python:3.11 AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && pip download --no-cache-dir --no-deps --dest /wheels 'nudenet==3.4.2'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /srv/mediaproxy --create-home mediaproxy
# Installed from the wheels built above only (--no-index): nothing is fetched again, and the
# wheels are bind-mounted for this step, so they never become a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels /wheels/mediaproxy-*.whl \
 && pip install --no-cache-dir --no-index --find-links /wheels --no-deps 'nudenet==3.4.2'
WORKDIR /srv/mediaproxy
COPY gunicorn.conf.py ./
USER 10001
# Workers default to the CPUs the container may use (its cgroup CPU quota), not the host's.
# Storage defaults to ./var/storage (empty: the server says so loudly at start);
# set MEDIAPROXY_STORAGE=s3 (or mount a directory) for real use.
ENV MEDIAPROXY_BIND=0.0.0.0:8000 \
    MEDIAPROXY_CACHE_DIR=/srv/mediaproxy/var/cache \
    PYTHONUNBUFFERED=1
EXPOSE 8000
# Exec form, on the port MEDIAPROXY_BIND names (mediaproxy/healthcheck.py).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 CMD ["python", "-m", "mediaproxy.healthcheck"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "mediaproxy.wsgi:app"]
