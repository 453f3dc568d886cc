"""Screenshot of a run's report.html in headless Chromium (the top of the page), after checking
that it renders without errors.

    semireg train mnist-100-vat --variant vat --seeds 0 --run-dir /tmp/shotrun/mnist-100-vat train.steps=600 train.threads=1
    python benchmarks/qa/report_screenshot.py /tmp/shotrun/mnist-100-vat docs/report-screenshot.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from semireg.report.browser import check_page


def main() -> None:
    run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    height = int(sys.argv[3]) if len(sys.argv) > 3 else 3400
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full.png"
        check = check_page(run_dir / "report.html", screenshot=full)
        if not check.ok:
            sys.exit(f"the report does not render cleanly: {check.errors} {check.broken_images}")
        image = Image.open(full)
        image.crop((0, 0, image.width, min(image.height, height))).save(out, optimize=True)
    print(f"{out}: {len(check.images)} images, no errors")


if __name__ == "__main__":
    main()
