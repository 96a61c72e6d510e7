import sys

from facebus.cli import main

sys.exit(main())
