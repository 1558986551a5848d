# shellcheck shell=bash
# Shared by scripts/run and scripts/test (sourced, not executed): make sure .venv exists and
# holds the dependencies pinned in pyproject.toml.
#
# Why this shape:
# - A fresh machine (or CI's fresh clone) has only Python 3.11, apt and PyPI, so the venv and
#   every dependency must be installed by the project's own scripts.
# - uv resolves and installs the whole pinned set in ~2 s (pip needs ~17 s), so it is
#   installed into the venv first. `pip --isolated` ignores this machine's pip.conf (extra
#   local indexes, find-links, constraints) and its ~80 noisy "Location … is ignored" lines.
# - `uv pip install -r pyproject.toml` reads [project].dependencies straight from the file:
#   no build backend, no egg-info in the work tree. (`-e .` also works, as the project has
#   `packages = []`, but it builds the project for nothing.)
# - The install is skipped when a stamp in var/ matches the hash of pyproject.toml (plus the
#   extras and the interpreter), so a second run starts at once.

AIRLOCK_UV_VERSION="${AIRLOCK_UV_VERSION:-0.13.9}"

# Creates .venv when missing or broken (e.g. its interpreter was removed).
ensure_venv() {
    if [[ -x .venv/bin/python ]] && .venv/bin/python -c "" 2>/dev/null; then
        return 0
    fi
    local py
    py="$(command -v python3.11 || command -v python3 || true)"
    if [[ -z "$py" ]]; then
        echo "error: neither python3.11 nor python3 is on PATH" >&2
        return 1
    fi
    echo "==> creating .venv with $py"
    rm -rf .venv
    "$py" -m venv .venv
}

# ensure_deps NAME [EXTRA...]: install the pinned dependencies (plus the named extras) unless
# var/.deps-NAME.sha256 says this exact pyproject.toml was already installed.
ensure_deps() {
    local name="$1"
    shift
    local stamp="var/.deps-${name}.sha256"
    local want
    want="$({
        cat pyproject.toml
        echo "extras: $*"
        .venv/bin/python -c "import sys; print(sys.version)"
    } | sha256sum | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi

    echo "==> installing dependencies (${name})"
    if [[ ! -x .venv/bin/uv ]]; then
        .venv/bin/python -m pip --isolated install --quiet --disable-pip-version-check "uv==${AIRLOCK_UV_VERSION}"
    fi
    local args=(-r pyproject.toml)
    local extra
    for extra in "$@"; do
        args+=(--extra "$extra")
    done
    .venv/bin/uv pip install --quiet --python .venv/bin/python "${args[@]}"

    mkdir -p var
    echo "$want" >"$stamp"
}
