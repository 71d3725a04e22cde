"""The caregiver's messages and e-mails: every decision on their declarations and claims."""
