"""WeChat API emulator for tests and the demo; see `emulator.app`."""
