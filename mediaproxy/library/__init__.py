"""The media library (seeds 002-004): records, jobs and API dialects over the origin's parts."""
