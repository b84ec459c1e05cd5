"""The media library: records, jobs and its APIs (the /api/v1 API, the presigned /media API, the /v2
image service and its admin API) over the origin's parts."""
