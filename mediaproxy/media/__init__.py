"""Media: transform specs, the pyvips pipeline, video, probing, placeholders, NSFW."""
