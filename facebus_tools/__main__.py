import sys

from facebus_tools.cli import main

sys.exit(main())
