"""Data files shipped with mediaproxy: CDN provider address ranges for the
client IP allow-list (``MEDIAPROXY_TRUSTED_CLIENT_CIDRS=@cloudflare``).
``python -m mediaproxy.data.refresh`` rewrites them from the providers' lists."""
