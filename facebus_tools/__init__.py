"""The ``facebus`` command and the tools above the services: the command line (``cli``), the demo, the private
test and demo servers (``devservers``), the broker set-up (``broker``), the gallery and visitor management
(``faces``, ``search``) and ``grafana push``. The shared package ``facebus`` and the services import nothing here."""
