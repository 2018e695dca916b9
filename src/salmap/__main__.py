import sys

from salmap.cli import main

sys.exit(main())
