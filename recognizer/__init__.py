"""The recognizer service: frames in, one face event per face out. Only this package imports face_recognition."""
