#!/bin/sh
# Installs LlamaDesk for the current user (no root needed).
#
#   ./install.sh                 from an unpacked release tarball: copies LlamaDesk/ to
#                                ~/.local/opt/LlamaDesk, links ~/.local/bin/llamadesk and adds
#                                the menu entry, AppStream metainfo and icons
#   ./install.sh --uninstall     removes all of that again (your chats and models stay)
#   install.sh --desktop-only --from STAGE --exec PATH
#                                only the menu entry, metainfo and icons from STAGE/share,
#                                launching PATH (what `make install-desktop` runs)
#
# Honours XDG_DATA_HOME (default ~/.local/share); LLAMADESK_OPT_DIR and LLAMADESK_BIN_DIR
# override ~/.local/opt/LlamaDesk and ~/.local/bin.
set -eu

APP_ID=io.github.llamadesk.LlamaDesk
HERE=$(cd "$(dirname "$0")" && pwd)
DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
OPT_DIR=${LLAMADESK_OPT_DIR:-$HOME/.local/opt/LlamaDesk}
BIN_DIR=${LLAMADESK_BIN_DIR:-$HOME/.local/bin}

mode=full
from=$HERE
exec_path=

die() {
    echo "install.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --desktop-only) mode=desktop ;;
        --uninstall) mode=uninstall ;;
        --from) [ $# -ge 2 ] || die "--from needs a folder"; from=$2; shift ;;
        --exec) [ $# -ge 2 ] || die "--exec needs a path"; exec_path=$2; shift ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done

refresh_caches() {
    # Menus and icon themes pick the files up without these too, only later.
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$DATA_HOME/applications" 2>/dev/null || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -f "$DATA_HOME/icons/hicolor/index.theme" ]; then
        gtk-update-icon-cache -q -t "$DATA_HOME/icons/hicolor" 2>/dev/null || true
    fi
}

install_desktop_files() {
    share=$from/share
    [ -f "$share/applications/$APP_ID.desktop" ] || die "no $share/applications/$APP_ID.desktop"
    [ -n "$exec_path" ] || die "no program to launch (--exec)"
    mkdir -p "$DATA_HOME/applications" "$DATA_HOME/metainfo" "$DATA_HOME/icons"
    # Exec and TryExec get the absolute path: ~/.local/bin is not on every session's PATH.
    sed -e "s|^Exec=.*|Exec=\"$exec_path\"|" -e "/^Exec=/a TryExec=$exec_path" \
        "$share/applications/$APP_ID.desktop" >"$DATA_HOME/applications/$APP_ID.desktop"
    cp "$share/metainfo/$APP_ID.metainfo.xml" "$DATA_HOME/metainfo/"
    cp -R "$share/icons/hicolor" "$DATA_HOME/icons/"
    refresh_caches
    echo "Installed the LlamaDesk menu entry in $DATA_HOME (launches $exec_path)"
}

case $mode in
    uninstall)
        rm -f "$DATA_HOME/applications/$APP_ID.desktop" "$DATA_HOME/metainfo/$APP_ID.metainfo.xml"
        find "$DATA_HOME/icons/hicolor" -name "$APP_ID.*" -type f -exec rm -f {} + 2>/dev/null || true
        if [ -L "$BIN_DIR/llamadesk" ]; then rm -f "$BIN_DIR/llamadesk"; fi
        rm -rf "$OPT_DIR"
        refresh_caches
        echo "LlamaDesk removed (conversations, settings and models are kept in your data folders)"
        ;;
    desktop)
        install_desktop_files
        ;;
    full)
        [ -x "$from/LlamaDesk/llamadesk" ] || die "run this from the unpacked tarball (no LlamaDesk/llamadesk next to it)"
        mkdir -p "$(dirname "$OPT_DIR")" "$BIN_DIR"
        rm -rf "$OPT_DIR.new"
        cp -R "$from/LlamaDesk" "$OPT_DIR.new"
        rm -rf "$OPT_DIR"
        mv "$OPT_DIR.new" "$OPT_DIR"
        ln -sfn "$OPT_DIR/llamadesk" "$BIN_DIR/llamadesk"
        exec_path=$OPT_DIR/llamadesk
        install_desktop_files
        echo "Installed LlamaDesk in $OPT_DIR; run it from the menu or with: $BIN_DIR/llamadesk"
        case ":$PATH:" in
            *":$BIN_DIR:"*) ;;
            *) echo "Note: $BIN_DIR is not on your PATH; add it to run 'llamadesk' from a terminal." ;;
        esac
        ;;
esac
