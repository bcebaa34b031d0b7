"""Desktop icons of concrete things from the Tango (public domain) and Oxygen (LGPL-3+) themes.

Icon themes are mostly UI glyphs (go-next, edit-copy, folders, mimetypes, status badges). Only the icons
listed below are used: ones whose name, or a caption written for it, says what the picture shows, checked
by eye (devices, faces, a few objects from apps/places/status, weather). A line is `context/name [caption]`;
without a caption the file name's words are used ('audio-card' -> 'audio card').
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

from multimodal.data.corpora import drop_duplicate_files, require
from multimodal.data.corpora.svg import RENDER_SIZE, render_svg, require_rsvg
from multimodal.data.sources import SourceItem, humanize, make_key

NAME = "icons"
LICENSES = {"tango": "Public domain (Tango Desktop Project; Debian package tango-icon-theme)",
            "oxygen": "LGPL-3.0-or-later (Oxygen icons, KDE; Debian package oxygen-icon-theme)"}
LICENSE = "per sample: " + " or ".join(LICENSES.values())
SOURCE = "apt-get install tango-icon-theme oxygen-icon-theme librsvg2-bin"
TANGO = Path("/usr/share/icons/Tango/scalable")  # SVGs, rendered; the PNGs stop at 32 px
OXYGEN = Path("/usr/share/icons/oxygen/base")  # PNGs in NxN folders; the largest of at least MIN_SIZE is used
MIN_SIZE = 48
FACES = """
emotes/face-angel smiling face with halo
emotes/face-kiss kissing face
emotes/face-plain neutral face
emotes/face-sad sad face
emotes/face-smile smiling face
emotes/face-surprise surprised face
emotes/face-wink winking face
"""
WEATHER = """
status/weather-clear sun
status/weather-clear-night moon
status/weather-showers rain cloud
status/weather-snow snow cloud
status/weather-storm storm cloud with lightning
"""
COMMON = FACES + WEATHER + """
apps/accessories-calculator calculator
apps/office-calendar calendar
devices/audio-input-microphone microphone
devices/battery
devices/camera-photo photo camera
devices/computer desktop computer
devices/drive-harddisk hard disk drive
devices/drive-optical optical disc drive
devices/input-keyboard keyboard
devices/input-mouse computer mouse
devices/media-floppy floppy disk
devices/media-optical compact disc
devices/printer
devices/video-display computer monitor
places/network-server
places/user-trash trash can
status/user-trash-full full trash can
"""
WHITELIST = {"tango": COMMON + """
devices/camera-video video camera
devices/input-gaming joystick
devices/media-flash memory card
devices/multimedia-player portable music player
devices/network-wired network cable
emotes/face-crying crying face
emotes/face-devilish smiling face with horns
emotes/face-glasses smiling face with glasses
emotes/face-grin grinning face
emotes/face-monkey monkey face
emotes/face-smile-big smiling face with open mouth
status/mail-attachment paper clip
status/weather-few-clouds sun behind clouds
status/weather-few-clouds-night moon behind clouds
status/weather-overcast clouds
""", "oxygen": COMMON + """
apps/accessories-dictionary dictionary
apps/clock
apps/internet-telephony telephone
apps/kalarm alarm clock
devices/audio-card sound card
devices/audio-headphones headphones
devices/audio-headset headset
devices/camera-web webcam
devices/computer-laptop laptop computer
devices/cpu cpu chip
devices/drive-removable-media-usb-pendrive usb flash drive
devices/input-gaming game controller
devices/input-tablet graphics tablet
devices/media-flash memory chip
devices/media-flash-memory-stick memory stick
devices/media-flash-sd-mmc sd card
devices/media-flash-smart-media smartmedia card
devices/media-optical-audio audio cd
devices/media-optical-blu-ray blu-ray disc
devices/media-optical-dvd dvd
devices/media-tape cassette tape
devices/modem
devices/multimedia-player portable media player
devices/multimedia-player-apple-ipod ipod music player
devices/pda personal digital assistant
devices/phone mobile phone
devices/printer-laser laser printer
devices/scanner
devices/smartphone
devices/tablet tablet computer
devices/video-projector video projector
devices/video-television television
emotes/face-embarrassed embarrassed face
emotes/face-laugh laughing face
emotes/face-raspberry face with tongue out
emotes/face-smile-big grinning face
emotes/face-uncertain uncertain face
status/weather-clouds sun behind clouds
status/weather-clouds-night moon behind clouds
status/weather-many-clouds clouds
"""}


def parse_whitelist(table: str) -> dict[str, str]:
    """'context/name [caption]' lines -> {context/name: caption}."""
    out = {}
    for line in filter(str.strip, table.splitlines()):
        rel, _, caption = line.strip().partition(" ")
        out[rel] = caption.strip() or humanize(rel.rsplit("/", 1)[-1])
    return out


def largest_png(root: Path, rel: str) -> Path | None:
    sizes = sorted((int(d.name.split("x")[0]), d) for d in root.iterdir() if re.fullmatch(r"\d+x\d+", d.name))
    return next((d / f"{rel}.png" for px, d in reversed(sizes) if px >= MIN_SIZE and (d / f"{rel}.png").is_file()),
                None)


def icon_files(theme: str, root: Path) -> dict[Path, tuple[str, str]]:
    """{file: (context/name, caption)} for the theme's whitelisted icons that are installed."""
    found, missing = {}, []
    for rel, caption in parse_whitelist(WHITELIST[theme]).items():
        path = root / f"{rel}.svg" if theme == "tango" else largest_png(root, rel)
        if path is None or not path.is_file():
            missing.append(rel)
        else:
            found[path] = (rel, caption)
    if missing:
        warnings.warn(f"{theme}: {len(missing)} whitelisted icon(s) not installed at {MIN_SIZE}+ px: {missing}",
                      stacklevel=2)
    return found


def items(tango: Path = TANGO, oxygen: Path = OXYGEN, size: int = RENDER_SIZE) -> list[SourceItem]:
    require_rsvg()
    files = {path: (theme, *entry) for theme, root in (("tango", tango), ("oxygen", oxygen))
             for path, entry in icon_files(theme, require(root, f"{theme} icon theme", SOURCE)).items()}
    out = []
    for path in drop_duplicate_files(list(files)):
        theme, rel, caption = files[path]
        image = functools.partial(render_svg, str(path), size) if path.suffix == ".svg" else str(path)
        meta = {"source": str(path), "theme": theme, "icon": rel, "category": rel.split("/")[0],
                "license": LICENSES[theme]}
        out.append(SourceItem(make_key(f"{theme}_{rel.rsplit('/', 1)[-1]}"), caption, image, [caption], meta))
    return out
