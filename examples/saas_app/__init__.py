"""A small SaaS app whose customers sign up, subscribe, use and change plans through Meterline."""
