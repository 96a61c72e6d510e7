"""The publisher service: frames from a webcam, stream, video file or image folder, published as raw JPEG to MQTT."""
