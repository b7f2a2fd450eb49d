"""Import names that differ from the distribution that provides them.

When a module is not installed where the model is built, its distribution's
metadata is not there to say who provides it; this table does, for the usual
cases in trading and data notebooks. A distribution named in the requirements
is taken as providing the modules listed for it here.

Source: each distribution's own published metadata, that is, the top-level
packages its wheels on PyPI install (``top_level.txt`` / ``RECORD``). Where a
distribution is installed on the machine that runs the tests,
``tests/export/test_requirements.py`` checks its entry against the installed
metadata. An import whose distribution is named like it (``ccxt``,
``pandas_ta`` for ``pandas-ta``, ``yfinance``) needs no entry.
"""
from __future__ import annotations

# import name -> distributions that provide it, the usual one first.
IMPORT_TO_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    # data science and machine learning
    "sklearn": ("scikit-learn",),
    "skimage": ("scikit-image",),
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
    "PIL": ("Pillow",),
    "umap": ("umap-learn",),
    "community": ("python-louvain",),
    "Bio": ("biopython",),
    # finance and trading
    "pypfopt": ("PyPortfolioOpt",),
    "talib": ("TA-Lib",),
    "tulipy": ("tulipy", "newnewtulipy"),
    "binance": ("python-binance",),
    "alpaca": ("alpaca-py",),
    "kucoin": ("python-kucoin",),
    "polygon": ("polygon-api-client",),
    "finnhub": ("finnhub-python",),
    "nasdaqdatalink": ("Nasdaq-Data-Link",),
    "zipline": ("zipline-reloaded", "zipline"),
    # messaging and the web
    "telegram": ("python-telegram-bot",),
    "discord": ("discord.py",),
    "bs4": ("beautifulsoup4",),
    "websocket": ("websocket-client",),
    "socketio": ("python-socketio",),
    "engineio": ("python-engineio",),
    "jwt": ("PyJWT",),
    "jose": ("python-jose",),
    "newspaper": ("newspaper3k",),
    # files, formats and system
    "yaml": ("PyYAML",),
    "dateutil": ("python-dateutil",),
    "dotenv": ("python-dotenv",),
    "docx": ("python-docx",),
    "pptx": ("python-pptx",),
    "fitz": ("PyMuPDF",),
    "magic": ("python-magic",),
    "attr": ("attrs",),
    "git": ("GitPython",),
    "serial": ("pyserial",),
    "usb": ("pyusb",),
    "zmq": ("pyzmq",),
    "snappy": ("python-snappy",),
    "grpc": ("grpcio",),
    "kafka": ("kafka-python",),
    "bson": ("pymongo",),
    "MySQLdb": ("mysqlclient",),
    "psycopg2": ("psycopg2-binary", "psycopg2"),
    "dns": ("dnspython",),
    # cryptography
    "Crypto": ("pycryptodome",),
    "Cryptodome": ("pycryptodomex",),
    "OpenSSL": ("pyOpenSSL",),
    "nacl": ("PyNaCl",),
    # desktop and graphics
    "gi": ("PyGObject",),
    "wx": ("wxPython",),
    "OpenGL": ("PyOpenGL",),
    "Xlib": ("python-xlib",),
    "pkg_resources": ("setuptools",),
}
