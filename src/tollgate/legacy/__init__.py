"""Import of the data of the portal Tollgate replaces (users, subscriptions, payments in JSON)."""
