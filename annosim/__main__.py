import sys

from annosim.cli import main

sys.exit(main())
