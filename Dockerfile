# syntax=docker/dockerfile:1
# mediaproxy: slim image, non-root, health-checked.
# docker build -t mediaproxy . && docker run -p 8000:8000 -e MEDIAPROXY_SECRET_KEY=... -e MEDIAPROXY_STORAGE=s3 mediaproxy

# The full Python image has gcc and the C headers for the Cython extension, so the
# build stage needs no apt-get. Every wheel (ours and all dependencies) is built here once:
# the dependencies from the lock (requirements/service.txt: exact versions, every download's
# hash checked), mediaproxy with the lock's setuptools and Cython (no build isolation).
FROM python:3.11 AS build
WORKDIR /src
COPY requirements/service.txt requirements/service.txt
RUN pip wheel --no-cache-dir --require-hashes --no-deps --wheel-dir /wheels -r requirements/service.txt \
 && pip install --no-cache-dir --no-index --no-deps /wheels/setuptools-*.whl /wheels/wheel-*.whl /wheels/[Cc]ython-*.whl
COPY . .
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /srv/mediaproxy --create-home mediaproxy
# Installed from the wheels built above only (--no-index: the lock's versions, nothing fetched
# again; the build tools are not installed), and the wheels are bind-mounted for this step, so
# they never become a layer of the image. nudenet ships the NSFW model file; its code is not used.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels /wheels/mediaproxy-*.whl \
 && pip install --no-cache-dir --no-index --no-deps /wheels/nudenet-*.whl
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
