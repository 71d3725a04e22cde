"""The GraphQL gateway (the public contract) and the caregiver front-end."""
