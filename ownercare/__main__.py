import sys

from ownercare.cli import main

sys.exit(main())
