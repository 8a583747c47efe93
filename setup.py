#!/usr/bin/env python3
"""Build and install the distribution ``patroni`` from the pinned pristine sdist plus ``patches/series``.

The patched package is materialised into ``patroni/`` by :mod:`patchqueue`; name, version and every other piece of
metadata (requirements, extras, console scripts) come from upstream's own sdist metadata, relabelled with our
local version. Beside it goes our own module ``patroni_systemd_reload`` (the units' ``ExecReload=``), which is not
part of the series.
"""

import os
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import patchqueue  # noqa: E402


def main() -> None:
    """Materialise the patched tree, then hand it to setuptools."""
    try:
        metadata = patchqueue.build(HERE)
    except patchqueue.BuildError as e:
        sys.exit('patroni-sdnotify: error: {0}'.format(e))
    setup(
        name='patroni',
        version=metadata['version'],
        description=metadata['description'],
        long_description=metadata['long_description'],
        long_description_content_type='text/x-rst',
        url=metadata['url'],
        author=metadata['author'],
        author_email=metadata['author_email'],
        license=metadata['license'],
        license_files=['generated/LICENSE'],
        keywords=metadata['keywords'],
        classifiers=metadata['classifiers'],
        packages=find_packages(include=['patroni', 'patroni.*']),
        py_modules=['patroni_systemd_reload'],
        package_data={'patroni': ['postgresql/available_parameters/*.yml',
                                  'postgresql/available_parameters/*.yaml']},
        install_requires=metadata['install_requires'],
        extras_require=metadata['extras_require'],
        entry_points={'console_scripts': metadata['entry_points']['console_scripts']
                      + ['patroni_systemd_reload = patroni_systemd_reload:main']},
    )


if __name__ == '__main__':
    main()
