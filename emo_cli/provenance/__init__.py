"""What a video says about how it was made: container tags and sidecar (`tags`), C2PA content
credentials (`credentials`, signed with an `identity`), the frame `watermark`, and `verify`,
which checks all three."""
