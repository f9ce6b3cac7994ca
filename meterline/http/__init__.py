"""HTTP serving shared by the services: transport deadlines and size limits (`guard`), and
the conventions of their OpenAPI documents (`openapi`)."""
