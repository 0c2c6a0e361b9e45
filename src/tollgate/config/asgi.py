import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tollgate.config.settings")
django.setup(set_prefix=False)

from tollgate.config.handlers import RoutedASGIHandler  # noqa: E402  (after Django is set up)

application = RoutedASGIHandler()
