"""HTTP serving shared by the services: transport deadlines and size limits (`guard`)."""
