# shellcheck shell=bash
# Sourced by scripts/run (and by tests/test_run_command.py, which checks what it sets):
# the addresses the processes scripts/run starts are given, all from one PORT.

# run_environment: set URL from PORT (default 8000) and export where the demo agent, the
# links in notifications and the drills' probe reach the server (unless already set).
run_environment() {
    PORT="${PORT:-8000}"
    URL="http://127.0.0.1:${PORT}"
    # For the demo agent: where the server listens. Links in notifications and the drills'
    # probe point at the same place (whatever PORT is), unless set already.
    export AIRLOCK_URL="$URL"
    export AIRLOCK_PUBLIC_URL="${AIRLOCK_PUBLIC_URL:-$URL}"
    export AIRLOCK_GATE_URL="${AIRLOCK_GATE_URL:-$URL}"
}

# mail_destination PYTHON: one line saying where outgoing mail goes with these settings.
mail_destination() {
    "$1" -c 'from config.settings.base import mail_destination; print(mail_destination())'
}
