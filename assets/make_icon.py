"""Draws the app's window icon, assets/icon.png: a 3 x 3 batch of image tiles on a rounded
square, the tiles shading from blue to green as a batch fills. Deterministic (no randomness), so
running it again gives the same file:  python3 assets/make_icon.py  (needs Pillow)."""

from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 128
SCALE = 4  # drawn large, then downsampled: smooth edges without an antialiasing option


def main() -> None:
    big = SIZE * SCALE
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    margin = 4 * SCALE
    draw.rounded_rectangle(
        (margin, margin, big - margin, big - margin), radius=24 * SCALE, fill=(28, 36, 52, 255)
    )
    cells, gap = 3, 8 * SCALE
    inner = big - 2 * margin - 2 * 14 * SCALE
    cell = (inner - (cells - 1) * gap) // cells
    origin = margin + 14 * SCALE
    for row in range(cells):
        for col in range(cells):
            t = (row * cells + col) / (cells * cells - 1)
            colour = (
                int(70 + (90 - 70) * t),
                int(140 + (200 - 140) * t),
                int(230 + (120 - 230) * t),
                255,
            )
            x = origin + col * (cell + gap)
            y = origin + row * (cell + gap)
            draw.rounded_rectangle((x, y, x + cell, y + cell), radius=5 * SCALE, fill=colour)
    img = img.resize((SIZE, SIZE), Image.LANCZOS)
    img.save(Path(__file__).with_name("icon.png"), optimize=True)


if __name__ == "__main__":
    main()
