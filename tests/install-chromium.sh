#!/bin/sh
# The browser for the dashboard's end-to-end tests: Debian's chromium, driven by
# Playwright through executable_path (Playwright's own browser download is never used).
# Installs it when it is missing and this machine can (apt-get, as root or with
# password-less sudo); otherwise says how, and the browser tests skip with that message.
set -u
for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "browser tests: $(command -v "$name") ($("$name" --version 2>/dev/null | head -1))"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser tests will be skipped: no chromium and no apt-get; install Chromium and" \
        "set JOURNEYS_CHROMIUM to its path"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "browser tests will be skipped: run 'sudo apt-get install chromium' to enable them"
    exit 0
fi
echo "installing Debian's chromium for the browser tests..."
export DEBIAN_FRONTEND=noninteractive
if ! $as_root apt-get install -y -q chromium >/dev/null 2>&1; then
    $as_root apt-get update -q >/dev/null 2>&1
    if ! $as_root apt-get install -y -q chromium >/dev/null; then
        echo "browser tests will be skipped: apt-get could not install chromium"
        exit 0
    fi
fi
echo "browser tests: $(command -v chromium) ($(chromium --version 2>/dev/null | head -1))"
