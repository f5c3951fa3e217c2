"""checkoutctl: the operator's and developer's command line for the checkout mesh.

`checkoutctl demo` walks a whole checkout through a running mesh (`make up`) as a demo customer;
`checkoutctl show <checkout_id>` prints a saga's steps through the trusted admin service;
`checkoutctl failed` lists the checkouts that need an operator. Run `checkoutctl --help`.
"""
