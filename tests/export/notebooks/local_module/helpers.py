"""Small helpers shared by the research notebooks."""
import os


def data_path(name):
    return os.path.join("data", name)


def download(symbol, start):
    """Fetch prices once, by hand; the model itself never calls this."""
    import yfinance

    return yfinance.download(symbol, start=start)
