def main() -> None:  # placeholder replaced by the real CLI
    raise SystemExit(0)
