import sys

from vle_kit.cli import main

sys.exit(main())
