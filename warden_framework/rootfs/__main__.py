"""`python -m warden_framework.rootfs DEST`: the same as `warden-rootfs DEST`."""

import sys

from . import main

sys.exit(main())
