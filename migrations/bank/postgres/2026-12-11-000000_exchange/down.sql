DROP TABLE exchange_traders;
DROP TABLE exchange_steps;
DROP TABLE exchange_trades;
DROP TABLE exchange_orders;
