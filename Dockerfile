# mediaproxy: slim image, non-root, health-checked.
# docker build -t mediaproxy . && docker run -p 8000:8000 -e MEDIAPROXY_SECRET_KEY=... -e MEDIAPROXY_STORAGE=s3 mediaproxy
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && pip download --no-cache-dir --no-deps --dest /wheels 'nudenet==3.4.2'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /srv/mediaproxy --create-home mediaproxy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/mediaproxy-*.whl \
 && pip install --no-cache-dir --no-deps /wheels/nudenet-*.whl \
 && rm -rf /wheels
WORKDIR /srv/mediaproxy
COPY gunicorn.conf.py ./
USER mediaproxy
ENV MEDIAPROXY_BIND=0.0.0.0:8000 \
    MEDIAPROXY_STORAGE=/srv/mediaproxy/var/storage \
    MEDIAPROXY_CACHE_DIR=/srv/mediaproxy/var/cache \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/_health', timeout=2).status == 200 else 1)"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "mediaproxy.wsgi:app"]
