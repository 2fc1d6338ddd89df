"""The decrypt service on the EC2 parent instance (upstream spec 3).

It validates decrypt requests, attaches the instance-role credentials from IMDSv2
and forwards each request over vsock to one of the vault enclaves it keeps track of.
"""
