# Shared by the scripts in this folder (sourced, not run): installing missing
# Debian packages and finding cargo. Callers set `tag` to their name for messages.

# True if the Debian package is installed.
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Installs the given packages with apt (as root, or through sudo); no-op without arguments.
apt_install() {
  (($#)) || return 0
  echo "${tag:-polygear}: apt-get install $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Makes `cargo` callable (rustup's ~/.cargo/bin is not always on PATH) or exits.
need_cargo() {
  command -v cargo >/dev/null && return 0
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
    return 0
  fi
  echo "${tag:-polygear}: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
}
