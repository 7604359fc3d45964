"""Everything that speaks AMQP: the only package that imports kombu or py-amqp.

``transport`` connects and classifies the broker's refusals, ``topology``
plans and declares the queues, ``dead_letters`` builds a dead letter's
headers, ``read_ahead`` batches socket reads, and ``replay`` puts dead
letters back on their exchanges.
"""
