"""facebus: MQTT face-recognition events.

Shared code for every service: settings, topics, the event schema, the MQTT client, image helpers and logging.
Nothing in this package imports dlib or face_recognition (that costs ~1 s and 125 MB): only ``recognizer`` does.
"""

__version__ = "0.1.0"
