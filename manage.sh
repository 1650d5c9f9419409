#!/usr/bin/env bash
# The two front-door commands (see README.md):
#   ./manage.sh demo   build everything, migrate, seed, build the match index, serve on :5000
#   ./manage.sh test   build everything, run ruff and pytest
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
    "$VENV/bin/flask" matching rebuild
    echo ">> serving on http://127.0.0.1:5000 (Ctrl-C to stop)"
    exec "$VENV/bin/flask" run --host 127.0.0.1 --port 5000
    ;;
  test)
    setup
    shift
    "$VENV/bin/ruff" check .
    SECRET_KEY=${SECRET_KEY:-test-secret} "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./manage.sh demo|test [pytest args]" >&2
    exit 2
    ;;
esac
