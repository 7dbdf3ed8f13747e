import sys

from tools.facts import main

sys.exit(main())
