"""The development stack behind `meterline dev up`: embedded backing services, the demo."""
